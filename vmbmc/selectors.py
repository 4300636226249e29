"""Kubernetes label selectors (`a=b,c!=d,e in (f,g),h notin (i),j,!k`), parsed as kube-apiserver parses
them: the one parser of the controller's --vm-namespace-selector and the emulator's labelSelector."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Matcher = Callable[[Mapping[str, str]], bool]

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
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


def _term(term: str) -> Matcher:
    m = _EQ_RE.match(term)
    if m:
        key, op, value = m.groups()
        if op == "!=":
            return lambda lb: lb.get(key) != value
        return lambda lb: lb.get(key) == value
    m = _SET_RE.match(term)
    if not m:
        raise ValueError(f"unable to parse requirement: found '{term.strip()}', expected a label selector")
    neg, key, op, values = m.groups()
    if op:
        vals = {v.strip() for v in values.split(",") if v.strip()}
        if op == "in":
            return lambda lb: lb.get(key) in vals
        return lambda lb: lb.get(key) not in vals
    if neg:
        return lambda lb: key not in lb
    return lambda lb: key in lb


def parse(selector: str | None) -> Matcher:
    """A predicate over a label map; an empty selector matches everything. Raises ValueError."""
    terms = [_term(t) for t in split_terms(selector or "")]
    return lambda labels: all(t(labels) for t in terms)
