"""Label and field selectors, parsed as kube-apiserver parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from vmbmc.selectors import parse, split_terms
from vmbmc_devcluster.emulator.errors import bad_request

Matcher = Callable[[dict], bool]

def label_matcher(selector: str | None) -> Matcher:
    """A predicate over an object's labels (vmbmc.selectors); a bad selector is kube-apiserver's 400."""
    try:
        labels_match = parse(selector)
    except ValueError as err:
        raise bad_request(str(err)) from None

    def match(obj: dict) -> bool:
        return labels_match((obj.get("metadata") or {}).get("labels") or {})

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
    for term in split_terms(selector):
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
    for term in split_terms(selector):
        m = re.match(r"^\s*metadata\.name\s*(==|=)\s*(.*?)\s*$", term)
        if m:
            return m.group(2)
    return None
