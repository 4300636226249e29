"""Label and field selectors, parsed as kube-apiserver parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vmbmc.emulator.errors import bad_request

Matcher = Callable[[dict], bool]

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_terms(selector: str) -> list[str]:
    terms, depth, cur = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        terms.append("".join(cur))
    return [t for t in terms if t.strip()]


def label_matcher(selector: str | None) -> Matcher:
    if not selector or not selector.strip():
        return lambda _obj: True
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        m = _EQ_RE.match(term)
        if m:
            key, op, value = m.groups()
            if op == "!=":
                tests.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                tests.append(lambda lb, k=key, v=value: lb.get(k) == v)
            continue
        m = _SET_RE.match(term)
        if not m:
            raise bad_request(
                f"unable to parse requirement: found '{term.strip()}', expected a label selector"
            )
        neg, key, op, values = m.groups()
        if op:
            vals = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                tests.append(lambda lb, k=key, vs=vals: lb.get(k) in vs)
            else:
                tests.append(lambda lb, k=key, vs=vals: lb.get(k) not in vs)
        elif neg:
            tests.append(lambda lb, k=key: k not in lb)
        else:
            tests.append(lambda lb, k=key: k in lb)

    def match(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def _field_value(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def field_matcher(selector: str | None) -> Matcher:
    if not selector or not selector.strip():
        return lambda _obj: True
    tests: list[Callable[[dict], bool]] = []
    for term in _split_terms(selector):
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m.groups()
        if op == "!=":
            tests.append(lambda o, p=path, v=value: _text(_field_value(o, p)) != v)
        else:
            tests.append(lambda o, p=path, v=value: _text(_field_value(o, p)) == v)
    return lambda obj: all(t(obj) for t in tests)


def name_from_field_selector(selector: str | None) -> str | None:
    """`metadata.name=x` (alone or among others) → "x": lets the store answer by key."""
    if not selector:
        return None
    for term in _split_terms(selector):
        m = re.match(r"^\s*metadata\.name\s*(==|=)\s*(.*?)\s*$", term)
        if m:
            return m.group(2)
    return None
