"""CRD structural-schema behaviour of kube-apiserver (apiextensions.k8s.io/v1), without a server.

Public API (pure functions; ``schema`` is a CRD version's ``schema.openAPIV3Schema`` dict):

    prune(obj, schema, *, root=True) -> dict
        Copy of ``obj`` without the fields the schema does not declare. Kept as upstream: everything under
        ``x-kubernetes-preserve-unknown-fields: true``; ``apiVersion``, ``kind`` and ``metadata`` of the root
        object and of ``x-kubernetes-embedded-resource`` objects (``metadata`` cut to ObjectMeta's fields).
    apply_defaults(obj, schema) -> obj
        Fills ``default`` values in place (and returns ``obj``) like structuraldefaulting.Default: a default
        applies when the field is absent (or null and not nullable) and its parent exists; defaults inside a
        defaulted value apply too. Nulls of non-nullable fields without a default are dropped, as upstream.
    validate(obj, schema, *, old=None) -> list[Cause]
        OpenAPI v3 validation (kube-openapi's wording), list-type set/map uniqueness, then the
        ``x-kubernetes-validations`` CEL rules (``oldSelf`` and transition rules only when ``old`` is given).
        CEL is skipped, as upstream, when a blocking error (type, required, enum, too long, too many) exists.
    apply_schema(obj, schema, *, old=None) -> tuple[dict, list[Cause]]
        prune + apply_defaults + validate, the order kube-apiserver decodes and validates a custom resource.
    invalid_message(qualified_kind, name, causes) -> str
        The 422 Status message: ``<Kind>.<group> "<name>" is invalid: [c1, c2]`` (one cause: no brackets).
    qualified_kind(kind, group) -> str
        ``VirtualMachineBMC.virtualmachine.kubevirt.io`` (``Pod`` for the core group), for invalid_message.
    cause_text(cause) -> str
        ``"<field>: <message>"`` as field.Error.Error() prints it.
    validate_crd(crd) -> list[Cause]
        Basic acceptance checks of a CustomResourceDefinition (names, versions, a structural schema, CEL rules
        that compile), worded like apiextensions validation.

A Cause is the metav1.StatusCause dict: ``{"reason": "FieldValueRequired", "message": "Required value",
"field": "spec.foo"}``; ``message`` is field.Error.ErrorBody() (without the field), as in a real Status.

Fidelity notes (gaps against kube-apiserver, by design or by library):
- CEL runs on cel-python 0.5 (no static type check; runtime errors instead of compile errors for unknown
  fields; no cost budget; ``int`` and ``double`` do not compare with each other; no optional syntax ``?.``).
  The Kubernetes string library (lowerAscii, upperAscii, trim, split, replace, indexOf, lastIndexOf, join,
  substring, charAt) and list helpers (isSorted, sum, min, max, indexOf, lastIndexOf) are added here;
  ``url()``, ``quantity()``, ``ip()``/``cidr()`` and ``format`` libraries are not.
- No validation ratcheting (kube-apiserver >= 1.30 lets an update keep an unchanged invalid value).
- CEL values are typed by the schema as upstream: ``format: date-time`` strings are timestamps, ``duration``
  durations, ``byte`` bytes. ``matches()`` uses Python ``re`` rather than RE2.
- CEL failures on objects and arrays print ``Invalid value: <message>`` (kube-apiserver >= 1.31 omits compound
  values; older servers printed ``Invalid value: "object": <message>``); on scalars the value is shown.
- oneOf/anyOf/allOf/not use go-openapi's wording; formats checked: int32, int64, date-time, date, byte.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import functools
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, TypedDict

import celpy
from celpy import celtypes

__all__ = [
    "BLOCKING_REASONS",
    "Cause",
    "apply_defaults",
    "apply_schema",
    "cause_text",
    "invalid_message",
    "prune",
    "qualified_kind",
    "validate",
    "validate_crd",
]


class Cause(TypedDict):
    reason: str
    message: str
    field: str


# ObjectMeta's JSON fields: what survives pruning of `metadata` on a root or embedded object.
OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

# field.ErrorType -> the text ErrorBody() starts with.
_TYPE_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
}
# Types whose ErrorBody never shows the bad value.
_NO_VALUE_TYPES = frozenset(
    {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"}
)
# kube-apiserver's hasBlockingErr: with one of these, CEL rules are not run.
BLOCKING_REASONS = frozenset(
    {
        "FieldValueNotSupported",
        "FieldValueRequired",
        "FieldValueTooLong",
        "FieldValueTooMany",
        "FieldValueTypeInvalid",
    }
)
_OMIT = object()  # field.OmitValueType{}


# -------------------------------------------------------- error formatting (k8s.io/apimachinery field)


def _go_float(f: float) -> str:
    # Go's %v for float64 is %g with the shortest representation.
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f.is_integer() and abs(f) < 1e21:
        return str(int(f))
    text = repr(f)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mantissa}e{sign}{exp.lstrip('+-').rjust(2, '0')}"
    return text


def _go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _go_sharp(v: Any) -> str:
    """Go's %#v of an unstructured JSON value (map[string]interface {} etc.)."""
    if v is None:
        return "interface {}(nil)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return _go_quote(v)
    if isinstance(v, dict):
        inner = ", ".join(f"{_go_quote(str(k))}:{_go_sharp(v[k])}" for k in sorted(v))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(_go_sharp(x) for x in v) + "}"
    return repr(v)


def _value_text(v: Any) -> str:
    if v is None:
        return '"null"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return _go_quote(v)
    return _go_sharp(v)


def _cause(reason: str, field: str, value: Any = _OMIT, detail: str = "") -> Cause:
    body = _TYPE_TEXT.get(reason, "Invalid value")
    if reason not in _NO_VALUE_TYPES and value is not _OMIT:
        body = f"{body}: {_value_text(value)}"
    if detail:
        body = f"{body}: {detail}"
    return {"reason": reason, "message": body, "field": field}


def cause_text(cause: Cause) -> str:
    return f"{cause['field']}: {cause['message']}"


def qualified_kind(kind: str, group: str) -> str:
    """schema.GroupKind.String(): ``Kind.group``, or ``Kind`` for the core group."""
    return f"{kind}.{group}" if group else kind


def invalid_message(qualified_kind: str, name: str, causes: Iterable[Cause]) -> str:
    """StatusError message of apierrors.NewInvalid (duplicate messages collapse, as in ToAggregate)."""
    texts: list[str] = []
    for cause in causes:
        text = cause_text(cause)
        if text not in texts:
            texts.append(text)
    head = f"{qualified_kind} {_go_quote(name)} is invalid"
    if not texts:
        return head
    if len(texts) == 1:
        return f"{head}: {texts[0]}"
    return f"{head}: [{', '.join(texts)}]"


# ---------------------------------------------------------------- field paths


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _key(path: str, key: str) -> str:
    # field.Path.Key: kube-openapi errors name map entries "a.b", CEL/list-type errors "a[b]".
    return f"{path}[{key}]"


# ---------------------------------------------------------------- pruning


def _is_preserve(schema: dict) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


def _prune_meta(meta: Any) -> Any:
    if not isinstance(meta, dict):
        return meta
    return {k: copy.deepcopy(v) for k, v in meta.items() if k in OBJECT_META_FIELDS}


def prune(obj: Any, schema: dict | None, *, root: bool = True) -> Any:
    """Copy of ``obj`` with unknown fields dropped (structuralpruning.Prune)."""
    if schema is None:
        return copy.deepcopy(obj)
    return _prune(obj, schema, root or bool(schema.get("x-kubernetes-embedded-resource")))


def _prune(obj: Any, schema: dict, is_resource: bool) -> Any:
    if isinstance(obj, dict):
        props: dict = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = _is_preserve(schema)
        out: dict = {}
        for k, v in obj.items():
            if is_resource and k in ("apiVersion", "kind"):
                out[k] = copy.deepcopy(v)
            elif is_resource and k == "metadata":
                out[k] = _prune_meta(v)
            elif k in props:
                sub = props[k] or {}
                out[k] = _prune(v, sub, bool(sub.get("x-kubernetes-embedded-resource")))
            elif isinstance(additional, dict):
                out[k] = _prune(v, additional, bool(additional.get("x-kubernetes-embedded-resource")))
            elif additional is True or preserve:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(obj, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, bool(items.get("x-kubernetes-embedded-resource"))) for v in obj]
        return copy.deepcopy(obj)
    return obj


# ---------------------------------------------------------------- defaulting


def _non_nullable_null(v: Any, schema: dict | None) -> bool:
    return v is None and schema is not None and not schema.get("nullable") and "default" in schema


def apply_defaults(obj: Any, schema: dict | None) -> Any:
    """Apply ``default`` values in place (PruneNonNullableNullsWithoutDefaults)."""
    if schema is None:
        return obj
    _default(obj, schema)
    _drop_nulls(obj, schema)
    return obj


def _default(x: Any, schema: dict) -> None:
    if isinstance(x, dict):
        props: dict = schema.get("properties") or {}
        for k, prop in props.items():
            if not isinstance(prop, dict) or "default" not in prop:
                continue
            if k not in x or _non_nullable_null(x[k], prop):
                x[k] = copy.deepcopy(prop["default"])
        additional = schema.get("additionalProperties")
        for k in list(x):
            if k in props:
                _default(x[k], props[k] or {})
            elif isinstance(additional, dict):
                if _non_nullable_null(x[k], additional):
                    x[k] = copy.deepcopy(additional["default"])
                _default(x[k], additional)
    elif isinstance(x, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(x):
                if _non_nullable_null(v, items):
                    x[i] = copy.deepcopy(items["default"])
                _default(x[i], items)


def _drop_nulls(x: Any, schema: dict) -> None:
    if isinstance(x, dict):
        props: dict = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for k in list(x):
            sub = props.get(k) if k in props else (additional if isinstance(additional, dict) else None)
            if sub is None:
                continue
            if x[k] is None and not sub.get("nullable") and "default" not in sub:
                del x[k]
            else:
                _drop_nulls(x[k], sub)
    elif isinstance(x, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for v in x:
                _drop_nulls(v, items)


# ---------------------------------------------------------------- OpenAPI validation (kube-openapi wording)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _format_ok(fmt: str, v: Any) -> bool:
    if isinstance(v, str):
        if fmt == "date-time":
            if not _DATE_TIME.match(v):
                return False
            try:
                _dt.datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
            except ValueError:
                return False
            return True
        if fmt == "date":
            try:
                return bool(_DATE.match(v)) and bool(_dt.date.fromisoformat(v))
            except ValueError:
                return False
        if fmt == "byte":
            try:
                base64.b64decode(v, validate=True)
            except ValueError:
                return False
            return True
        return True
    if isinstance(v, int) and not isinstance(v, bool):
        if fmt == "int32":
            return -(2**31) <= v < 2**31
        if fmt == "int64":
            return -(2**63) <= v < 2**63
    return True


def _num_ok(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _Validator:
    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, cause: Cause) -> None:
        self.causes.append(cause)

    def node(self, v: Any, s: dict, path: str) -> None:
        if v is None:
            if s.get("nullable") or "type" not in s:
                return
            self._type_error(path, s["type"], "null")
            return
        if not self._type_ok(v, s, path):
            return
        self._junctors(v, s, path)
        if isinstance(v, str):
            self._string(v, s, path)
        fmt = s.get("format")
        if fmt and not _format_ok(fmt, v):
            self.add(
                _cause(
                    "FieldValueTypeInvalid",
                    path,
                    v,
                    f"{path} in body must be of type {fmt}: {_go_quote(str(v))}",
                )
            )
        if _num_ok(v):
            self._number(v, s, path)
        if isinstance(v, list):
            self._array(v, s, path)
        if "enum" in s and not any(_json_equal(v, e) for e in s["enum"]):
            allowed = ", ".join(_go_quote(e if isinstance(e, str) else json.dumps(e)) for e in s["enum"])
            self.add(_cause("FieldValueNotSupported", path, v, f"supported values: {allowed}"))
        if isinstance(v, dict):
            self._object(v, s, path)

    def _type_error(self, path: str, want: str, got: str) -> None:
        self.add(
            _cause(
                "FieldValueTypeInvalid", path, got, f"{path} in body must be of type {want}: {_go_quote(got)}"
            )
        )

    def _type_ok(self, v: Any, s: dict, path: str) -> bool:
        got = _json_type(v)
        if s.get("x-kubernetes-int-or-string"):
            if got in ("integer", "string") or (got == "number" and float(v).is_integer()):
                return True
            self._type_error(path, "integer,string", got)
            return False
        want = s.get("type")
        if not want:
            return True
        if want == got or (want == "number" and got == "integer"):
            return True
        if want == "integer" and got == "number" and float(v).is_integer():
            return True
        self._type_error(path, want, got)
        return False

    def _junctors(self, v: Any, s: dict, path: str) -> None:
        def errors_of(sub: dict) -> list[Cause]:
            inner = _Validator()
            inner.node(v, sub, path)
            return inner.causes

        name = _go_quote(path)
        if s.get("allOf"):
            failed = [c for sub in s["allOf"] for c in errors_of(sub)]
            if failed:
                self.add(
                    _cause("FieldValueInvalid", path, "", f"{name} must validate all the schemas (allOf)")
                )
                self.causes.extend(failed)
        if s.get("anyOf"):
            results = [errors_of(sub) for sub in s["anyOf"]]
            if all(results):
                self.add(
                    _cause("FieldValueInvalid", path, "", f"{name} must validate at least one schema (anyOf)")
                )
                self.causes.extend(min(results, key=len))
        if s.get("oneOf"):
            results = [errors_of(sub) for sub in s["oneOf"]]
            valid = sum(1 for r in results if not r)
            if valid != 1:
                more = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                self.add(
                    _cause(
                        "FieldValueInvalid",
                        path,
                        "",
                        f"{name} must validate one and only one schema (oneOf). {more}",
                    )
                )
                if valid == 0:
                    self.causes.extend(min(results, key=len))
        if isinstance(s.get("not"), dict) and not errors_of(s["not"]):
            self.add(_cause("FieldValueInvalid", path, "", f"{name} must not validate the schema (not)"))

    def _string(self, v: str, s: dict, path: str) -> None:
        if "maxLength" in s and len(v) > s["maxLength"]:
            n = s["maxLength"]
            self.add(
                _cause("FieldValueTooLong", path, v, f"may not be more than {n} byte{'' if n == 1 else 's'}")
            )
        if "minLength" in s and len(v) < s["minLength"]:
            self.add(
                _cause(
                    "FieldValueInvalid",
                    path,
                    v,
                    f"{path} in body should be at least {s['minLength']} chars long",
                )
            )
        if "pattern" in s and not _compiled_pattern(s["pattern"]).search(v):
            self.add(_cause("FieldValueInvalid", path, v, f"{path} in body should match '{s['pattern']}'"))

    def _number(self, v: float, s: dict, path: str) -> None:
        if "maximum" in s:
            mx = s["maximum"]
            if s.get("exclusiveMaximum") and v >= mx:
                self.add(
                    _cause("FieldValueInvalid", path, v, f"{path} in body should be less than {_num(mx)}")
                )
            elif v > mx:
                self.add(
                    _cause(
                        "FieldValueInvalid",
                        path,
                        v,
                        f"{path} in body should be less than or equal to {_num(mx)}",
                    )
                )
        if "minimum" in s:
            mn = s["minimum"]
            if s.get("exclusiveMinimum") and v <= mn:
                self.add(
                    _cause("FieldValueInvalid", path, v, f"{path} in body should be greater than {_num(mn)}")
                )
            elif v < mn:
                self.add(
                    _cause(
                        "FieldValueInvalid",
                        path,
                        v,
                        f"{path} in body should be greater than or equal to {_num(mn)}",
                    )
                )
        if s.get("multipleOf"):
            q = v / s["multipleOf"]
            if not math.isclose(q, round(q)):
                self.add(
                    _cause(
                        "FieldValueInvalid",
                        path,
                        v,
                        f"{path} in body should be a multiple of {_num(s['multipleOf'])}",
                    )
                )

    def _array(self, v: list, s: dict, path: str) -> None:
        if "minItems" in s and len(v) < s["minItems"]:
            self.add(
                _cause(
                    "FieldValueInvalid",
                    path,
                    len(v),
                    f"{path} in body should have at least {s['minItems']} items",
                )
            )
        if "maxItems" in s and len(v) > s["maxItems"]:
            n = s["maxItems"]
            self.add(
                _cause(
                    "FieldValueTooMany", path, len(v), f"must have at most {n} item{'' if n == 1 else 's'}"
                )
            )
        if s.get("uniqueItems"):
            seen: list[Any] = []
            for x in v:
                if any(_json_equal(x, y) for y in seen):
                    self.add(
                        _cause("FieldValueInvalid", path, v, f"{path} in body shouldn't contain duplicates")
                    )
                    break
                seen.append(x)
        items = s.get("items")
        if isinstance(items, dict):
            for i, x in enumerate(v):
                self.node(x, items, _index(path, i))

    def _object(self, v: dict, s: dict, path: str) -> None:
        if "maxProperties" in s and len(v) > s["maxProperties"]:
            n = s["maxProperties"]
            self.add(
                _cause(
                    "FieldValueTooMany", path, len(v), f"must have at most {n} item{'' if n == 1 else 's'}"
                )
            )
        if "minProperties" in s and len(v) < s["minProperties"]:
            self.add(
                _cause(
                    "FieldValueInvalid",
                    path,
                    len(v),
                    f"{path} in body should have at least {s['minProperties']} properties",
                )
            )
        for req in s.get("required") or ():
            if req not in v:
                self.add(_cause("FieldValueRequired", _child(path, req)))
        props: dict = s.get("properties") or {}
        additional = s.get("additionalProperties")
        for k, x in v.items():
            if k in props:
                self.node(x, props[k] or {}, _child(path, k))
            elif isinstance(additional, dict):
                self.node(x, additional, _child(path, k))
            elif additional is False:
                self.add(
                    _cause("FieldValueForbidden", _child(path, k), detail="field not declared in schema")
                )


def _num(n: float) -> str:
    return _go_float(n) if isinstance(n, float) else str(n)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    return a == b


@functools.lru_cache(maxsize=512)
def _compiled_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# ---------------------------------------------------------------- list-type (structurallisttype)


def _list_types(v: Any, s: dict, path: str, out: list[Cause]) -> None:
    if isinstance(v, dict):
        props: dict = s.get("properties") or {}
        additional = s.get("additionalProperties")
        for k, x in v.items():
            if k in props:
                _list_types(x, props[k] or {}, _child(path, k), out)
            elif isinstance(additional, dict):
                _list_types(x, additional, _key(path, k), out)
    elif isinstance(v, list):
        kind = s.get("x-kubernetes-list-type")
        if kind == "set":
            seen: list[Any] = []
            for i, x in enumerate(v):
                if any(_json_equal(x, y) for y in seen):
                    out.append(_cause("FieldValueDuplicate", _index(path, i), x))
                else:
                    seen.append(x)
        elif kind == "map":
            keys = s.get("x-kubernetes-list-map-keys") or []
            items_schema = s.get("items") or {}
            item_props = items_schema.get("properties") or {}
            seen_keys: list[dict] = []
            for i, x in enumerate(v):
                if not isinstance(x, dict):
                    continue
                key_val = {}
                for k in keys:
                    if k in x:
                        key_val[k] = x[k]
                    elif "default" in (item_props.get(k) or {}):
                        key_val[k] = item_props[k]["default"]
                if key_val in seen_keys:
                    out.append(_cause("FieldValueDuplicate", _index(path, i), key_val))
                else:
                    seen_keys.append(key_val)
        items = s.get("items")
        if isinstance(items, dict):
            for i, x in enumerate(v):
                _list_types(x, items, _index(path, i), out)


# ---------------------------------------------------------------- CEL (x-kubernetes-validations)


def _k8s_string_functions() -> dict[str, Callable[..., Any]]:
    S, L, Int = celtypes.StringType, celtypes.ListType, celtypes.IntType

    def split(s: str, sep: str, n: int = -1) -> Any:
        if n == 0:
            return L([])
        parts = s.split(sep) if n < 0 else s.split(sep, int(n) - 1)
        return L([S(p) for p in parts])

    def index_of(target: Any, x: Any, *start: int) -> Any:
        if isinstance(target, str):
            return Int(target.find(x, int(start[0]) if start else 0))
        return Int(next((i for i, y in enumerate(target) if y == x), -1))

    def last_index_of(target: Any, x: Any) -> Any:
        if isinstance(target, str):
            return Int(target.rfind(x))
        return Int(next((i for i in range(len(target) - 1, -1, -1) if target[i] == x), -1))

    def substring(s: str, start: int, end: int | None = None) -> Any:
        return S(s[int(start) :] if end is None else s[int(start) : int(end)])

    return {
        "lowerAscii": lambda s: S(s.lower()),
        "upperAscii": lambda s: S(s.upper()),
        "trim": lambda s: S(s.strip()),
        "split": split,
        "replace": lambda s, a, b, n=-1: S(s.replace(a, b, int(n))),
        "indexOf": index_of,
        "lastIndexOf": last_index_of,
        "join": lambda lst, sep="": S(sep.join(lst)),
        "substring": substring,
        "charAt": lambda s, i: S(s[int(i)] if int(i) < len(s) else ""),
        "isSorted": lambda lst: celtypes.BoolType(all(lst[i] <= lst[i + 1] for i in range(len(lst) - 1))),
        "sum": lambda lst: functools.reduce(lambda a, b: a + b, lst, Int(0)),
        "min": lambda lst: min(lst),
        "max": lambda lst: max(lst),
    }


_CEL_ENV = celpy.Environment()
_CEL_FUNCTIONS = _k8s_string_functions()
_OLD_SELF = re.compile(r"\boldSelf\b")


class CelCompileError(Exception):
    pass


@functools.lru_cache(maxsize=4096)
def _cel_program(expression: str) -> Any:
    """Compile once per expression text: the same rule on 1,000 objects is parsed once."""
    try:
        ast = _CEL_ENV.compile(expression)
    except Exception as exc:  # celpy raises CELParseError (and lark errors) for bad syntax
        raise CelCompileError(str(exc).strip()) from exc
    return _CEL_ENV.program(ast, functions=_CEL_FUNCTIONS)


def _cel_error_text(exc: Any) -> str:
    args = getattr(exc, "args", ())
    text = str(args[0]) if args else str(exc)
    m = re.match(r"no such member in mapping: '(.*)'", text)
    if m:
        return f"no such key: {m.group(1)}"
    if "no matching overload" in text or "no such overload" in text:
        return "no such overload"
    if "divide by zero" in text:
        return "division by zero"
    if "list index out of range" in repr(args):
        return "index out of bounds"
    return text


def _cel_eval(expression: str, activation: dict) -> tuple[Any, str | None]:
    program = _cel_program(expression)
    try:
        result = program.evaluate(activation)
    except celpy.CELEvalError as exc:
        return None, _cel_error_text(exc)
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, AttributeError) as exc:
        return None, _cel_error_text(exc)
    if isinstance(result, celpy.CELEvalError):
        return None, _cel_error_text(result)
    return result, None


def _self_view(v: Any, s: dict, is_resource: bool) -> Any:
    # At a resource root CEL sees apiVersion, kind and only metadata.name/generateName (as upstream).
    if is_resource and isinstance(v, dict):
        view = dict(v)
        meta = v.get("metadata")
        if isinstance(meta, dict):
            view["metadata"] = {k: meta[k] for k in ("name", "generateName") if k in meta}
        return view
    return v


def _to_cel(v: Any, s: dict | None) -> Any:
    """JSON -> CEL values typed by the schema, as Kubernetes does: strings with format date-time become
    timestamps, duration durations, byte bytes; everything else maps to its plain CEL type."""
    if s is None:
        return celpy.json_to_cel(v)
    if isinstance(v, dict):
        props: dict = s.get("properties") or {}
        additional = s.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): _to_cel(
                    x, props.get(k) if k in props else (additional if isinstance(additional, dict) else None)
                )
                for k, x in v.items()
            }
        )
    if isinstance(v, list):
        items = s.get("items")
        return celtypes.ListType([_to_cel(x, items if isinstance(items, dict) else None) for x in v])
    if isinstance(v, str) and not s.get("x-kubernetes-int-or-string"):
        fmt = s.get("format")
        try:
            if fmt == "date-time":
                return celtypes.TimestampType(v)
            if fmt == "duration":
                return celtypes.DurationType(v)
            if fmt == "byte":
                return celtypes.BytesType(base64.b64decode(v))
        except (ValueError, TypeError):
            return celtypes.StringType(v)
    return celpy.json_to_cel(v)


def _field_path_suffix(path: str, field_path: str) -> str:
    # fieldPath is a relative JSONPath: ".a.b" or "['x.y']" segments.
    out = path
    for m in re.finditer(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]", field_path):
        out = _child(out, m.group(1) if m.group(1) is not None else m.group(2))
    return out


def _cel_node(
    v: Any, old: Any, s: dict, path: str, is_resource: bool, has_old: bool, out: list[Cause]
) -> None:
    if has_old and not is_resource and v == old:
        # Validation ratcheting (kube-apiserver ≥ 1.30, on by default): an unchanged value is not
        # re-validated, so a status write does not re-run every spec rule.
        return
    rules = s.get("x-kubernetes-validations") or []
    if rules and v is not None:
        activation: dict = {"self": _to_cel(_self_view(v, s, is_resource), s)}
        if has_old and old is not None:
            activation["oldSelf"] = _to_cel(_self_view(old, s, is_resource), s)
        for rule in rules:
            _cel_rule(rule, v, s, path, activation, out)
    if v is None:
        return
    if isinstance(v, dict):
        props: dict = s.get("properties") or {}
        additional = s.get("additionalProperties")
        old_map = old if isinstance(old, dict) and has_old else None
        for k, x in v.items():
            if is_resource and k in ("apiVersion", "kind", "metadata"):
                continue
            sub = props.get(k) if k in props else (additional if isinstance(additional, dict) else None)
            if sub is None:
                continue
            kpath = _child(path, k) if k in props else _key(path, k)
            has = old_map is not None and k in old_map
            _cel_node(
                x,
                old_map.get(k) if has else None,
                sub,
                kpath,
                bool(sub.get("x-kubernetes-embedded-resource")),
                has,
                out,
            )
    elif isinstance(v, list):
        items = s.get("items")
        if not isinstance(items, dict):
            return
        old_items = _correlate_list(v, old, s) if has_old else [None] * len(v)
        for i, x in enumerate(v):
            o = old_items[i]
            _cel_node(
                x,
                o,
                items,
                _index(path, i),
                bool(items.get("x-kubernetes-embedded-resource")),
                o is not None,
                out,
            )


def _correlate_list(v: list, old: Any, s: dict) -> list[Any]:
    """Old element for each new one: only list-type map (by keys) and set (by value) correlate (upstream)."""
    if not isinstance(old, list):
        return [None] * len(v)
    kind = s.get("x-kubernetes-list-type")
    if kind == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []

        def key_of(x: Any) -> Any:
            return tuple(json.dumps(x.get(k), sort_keys=True) for k in keys) if isinstance(x, dict) else None

        by_key = {key_of(o): o for o in old}
        return [by_key.get(key_of(x)) for x in v]
    if kind == "set":
        return [x if any(_json_equal(x, o) for o in old) else None for x in v]
    return [None] * len(v)


def _cel_rule(rule: dict, v: Any, s: dict, path: str, activation: dict, out: list[Cause]) -> None:
    expr = (rule.get("rule") or "").strip()
    if not expr:
        return
    type_name = s.get("type") or ("object" if isinstance(v, dict) else _json_type(v))
    rule_text = (rule.get("message") or "").strip() or expr
    if _OLD_SELF.search(expr) and "oldSelf" not in activation:
        return  # transition rule: evaluated only with an existing old value (no optionalOldSelf support)
    try:
        result, err = _cel_eval(expr, activation)
    except CelCompileError as exc:
        out.append(_cause("FieldValueInvalid", path, type_name, f"rule compile error: {exc}"))
        return
    if err is not None:
        if err == "no such overload":
            detail = (
                f"'{err}': call arguments did not match a supported operator, function or macro "
                f"signature for rule: {rule_text}"
            )
        else:
            detail = f"{err} evaluating rule: {rule_text}"
        out.append(_cause("FieldValueInvalid", path, type_name, detail))
        return
    if result is True or (isinstance(result, celtypes.BoolType) and bool(result)):
        return
    field = _field_path_suffix(path, rule["fieldPath"]) if rule.get("fieldPath") else path
    detail = ""
    if rule.get("messageExpression"):
        try:
            msg, msg_err = _cel_eval(rule["messageExpression"], activation)
        except CelCompileError:
            msg, msg_err = None, "compile error"
        if msg_err is None and isinstance(msg, str) and msg.strip() and "\n" not in msg.strip():
            detail = msg.strip()
    if not detail:
        detail = (rule.get("message") or "").strip() or f"failed rule: {expr}"
    value = _OMIT if isinstance(v, dict | list) else v
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueDuplicate":
        out.append(_cause("FieldValueDuplicate", field, value))
    elif reason in ("FieldValueForbidden", "FieldValueRequired"):
        out.append(_cause(reason, field, detail=detail))
    else:
        out.append(_cause("FieldValueInvalid", field, value, detail))


# ---------------------------------------------------------------- entry points


def _has_rules(s: Any) -> bool:
    """Whether any node carries CEL rules (kube-apiserver builds no CEL validator otherwise)."""
    if not isinstance(s, dict):
        return False
    if s.get("x-kubernetes-validations"):
        return True
    subs = [*(s.get("properties") or {}).values(), s.get("items"), s.get("additionalProperties")]
    subs += [*(s.get("allOf") or ())]
    return any(_has_rules(x) for x in subs)


def validate(obj: Any, schema: dict | None, *, old: Any = None) -> list[Cause]:
    """Causes for ``obj`` against ``schema`` (empty list = valid). ``old`` is the stored object on update."""
    if schema is None:
        return []
    v = _Validator()
    root = obj
    if isinstance(obj, dict):
        # apiVersion/kind are checked by the server, metadata by ObjectMeta rules; a CRD schema may only
        # constrain metadata.name and metadata.generateName, so only those are validated against it.
        root = {k: x for k, x in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        if isinstance(obj.get("metadata"), dict) and "metadata" in (schema.get("properties") or {}):
            root["metadata"] = {
                k: obj["metadata"][k] for k in ("name", "generateName") if k in obj["metadata"]
            }
    v.node(root, schema, "")
    causes = v.causes
    _list_types(obj, schema, "", causes)
    if not _has_rules(schema):
        return causes
    if any(c["reason"] in BLOCKING_REASONS for c in causes):
        causes.append(
            _cause(
                "FieldValueInvalid",
                "<nil>",
                None,
                "some validation rules were not checked because the object was invalid; "
                "correct the existing errors to complete validation",
            )
        )
        return causes
    _cel_node(obj, old, schema, "", True, old is not None, causes)
    return causes


def apply_schema(obj: dict, schema: dict | None, *, old: dict | None = None) -> tuple[dict, list[Cause]]:
    """prune, default and validate ``obj`` as kube-apiserver does for a custom resource write."""
    if schema is None:
        return obj, []
    pruned = prune(obj, schema)
    apply_defaults(pruned, schema)
    return pruned, validate(pruned, schema, old=old)


# ---------------------------------------------------------------- CRD acceptance

_SCHEMA_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})


def _check_schema(s: Any, path: str, out: list[Cause], *, root: bool) -> None:
    if not isinstance(s, dict):
        out.append(_cause("FieldValueInvalid", path, _json_type(s), "must be an object"))
        return
    t = s.get("type")
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    preserve = _is_preserve(s)
    if t is not None and t not in _SCHEMA_TYPES:
        out.append(
            _cause(
                "FieldValueNotSupported",
                _child(path, "type"),
                t,
                "supported values: " + ", ".join(_go_quote(x) for x in sorted(_SCHEMA_TYPES)),
            )
        )
    if not t and not int_or_string and not preserve:
        out.append(
            _cause(
                "FieldValueRequired",
                _child(path, "type"),
                detail="must not be empty for specified "
                + ("object fields" if "properties" in s else "fields"),
            )
        )
    if root and t not in (None, "object"):
        out.append(_cause("FieldValueInvalid", _child(path, "type"), t, "must be object at the root"))
    if (
        "properties" in s
        and isinstance(s.get("additionalProperties"), dict | bool)
        and s.get("additionalProperties") is not False
    ):
        out.append(
            _cause(
                "FieldValueForbidden",
                _child(path, "additionalProperties"),
                detail="additionalProperties and properties are mutual exclusive",
            )
        )
    if s.get("additionalProperties") is False:
        out.append(
            _cause("FieldValueForbidden", _child(path, "additionalProperties"), detail="must not be false")
        )
    if t == "array" and "items" not in s:
        out.append(_cause("FieldValueRequired", _child(path, "items"), detail="must be specified"))
    if int_or_string and t not in (None, ""):
        out.append(
            _cause(
                "FieldValueInvalid",
                _child(path, "type"),
                t,
                "must be empty if x-kubernetes-int-or-string is true",
            )
        )
    for name, sub in (s.get("properties") or {}).items():
        _check_schema(sub, f"{path}.properties[{name}]", out, root=False)
    if isinstance(s.get("items"), dict):
        _check_schema(s["items"], _child(path, "items"), out, root=False)
    elif "items" in s:
        out.append(
            _cause("FieldValueForbidden", _child(path, "items"), detail="items must be a schema object")
        )
    if isinstance(s.get("additionalProperties"), dict):
        _check_schema(s["additionalProperties"], _child(path, "additionalProperties"), out, root=False)
    if s.get("x-kubernetes-list-type") == "map":
        keys = s.get("x-kubernetes-list-map-keys") or []
        if not keys:
            out.append(
                _cause(
                    "FieldValueRequired",
                    _child(path, "x-kubernetes-list-map-keys"),
                    detail="must not be empty if x-kubernetes-list-type is map",
                )
            )
        item_props = (s.get("items") or {}).get("properties") or {}
        for k in keys:
            if k not in item_props:
                out.append(
                    _cause(
                        "FieldValueInvalid",
                        _child(path, "x-kubernetes-list-map-keys"),
                        keys,
                        f"entries must all be names of item properties ({k} is not)",
                    )
                )
    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        rpath = f"{_child(path, 'x-kubernetes-validations')}[{i}]"
        expr = (rule or {}).get("rule", "")
        if not expr:
            out.append(_cause("FieldValueRequired", _child(rpath, "rule")))
            continue
        for key in ("rule", "messageExpression"):
            if key not in rule:
                continue
            try:
                _cel_program(rule[key])
            except CelCompileError as exc:
                out.append(
                    _cause("FieldValueInvalid", _child(rpath, key), rule[key], f"compilation failed: {exc}")
                )
        if rule.get("reason") not in (
            None,
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ):
            out.append(
                _cause(
                    "FieldValueNotSupported",
                    _child(rpath, "reason"),
                    rule["reason"],
                    'supported values: "FieldValueDuplicate", "FieldValueForbidden", '
                    '"FieldValueInvalid", "FieldValueRequired"',
                )
            )


def validate_crd(crd: dict) -> list[Cause]:
    """Causes that make kube-apiserver reject a CustomResourceDefinition (a basic subset)."""
    out: list[Cause] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    name = (crd.get("metadata") or {}).get("name") or ""
    if not group:
        out.append(_cause("FieldValueRequired", "spec.group"))
    elif "." not in group:
        out.append(
            _cause("FieldValueInvalid", "spec.group", group, "should be a domain with at least one dot")
        )
    if not plural:
        out.append(_cause("FieldValueRequired", "spec.names.plural"))
    if not names.get("kind"):
        out.append(_cause("FieldValueRequired", "spec.names.kind"))
    if not names.get("listKind") and not names.get("kind"):
        out.append(_cause("FieldValueRequired", "spec.names.listKind"))
    if group and plural and name != f"{plural}.{group}":
        out.append(
            _cause("FieldValueInvalid", "metadata.name", name, 'must be spec.names.plural+"."+spec.group')
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(
            _cause(
                "FieldValueNotSupported",
                "spec.scope",
                spec.get("scope"),
                'supported values: "Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        out.append(
            _cause(
                "FieldValueInvalid",
                "spec.versions",
                [],
                "must have exactly one version marked as storage version",
            )
        )
    elif sum(1 for v in versions if (v or {}).get("storage")) != 1:
        out.append(
            _cause(
                "FieldValueInvalid",
                "spec.versions",
                _OMIT,
                "must have exactly one version marked as storage version",
            )
        )
    seen: set[str] = set()
    for i, version in enumerate(versions):
        vpath = f"spec.versions[{i}]"
        vname = (version or {}).get("name")
        if not vname:
            out.append(_cause("FieldValueRequired", f"{vpath}.name"))
        elif vname in seen:
            out.append(_cause("FieldValueInvalid", f"{vpath}.name", vname, "must be unique"))
        else:
            seen.add(vname)
        schema = ((version or {}).get("schema") or {}).get("openAPIV3Schema")
        spath = f"{vpath}.schema.openAPIV3Schema"
        if schema is None:
            out.append(_cause("FieldValueRequired", spath, detail="schemas are required"))
            continue
        _check_schema(schema, spath, out, root=True)
        for j, column in enumerate((version or {}).get("additionalPrinterColumns") or []):
            cpath = f"{vpath}.additionalPrinterColumns[{j}]"
            for key in ("name", "type", "jsonPath"):
                if not (column or {}).get(key):
                    out.append(_cause("FieldValueRequired", f"{cpath}.{key}"))
    return out
